connection "files" {
  type = "file"
  path = ["data"]
}
