connection "files" {
  type   = "file"
  path   = "data"
  fromat = "json"
}
