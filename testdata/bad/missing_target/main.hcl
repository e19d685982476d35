connection "files" {
  type = "file"
  path = "data"
}
integration "sync" {
  source {
    connection = connection.files
    path       = "in/*.json"
  }
}
