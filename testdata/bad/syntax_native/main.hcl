connection "files" {
  type = "file"
  path = "data"

mapping "m" {
  key = "id"
}
