connection "files" {
  type = "file"
  path = "data"
}

conection "other" {
  type = "file"
}
