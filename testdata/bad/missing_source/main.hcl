connection "files" {
  type = "file"
  path = "data"
}
integration "sync" {
  target {
    connection = connection.files
    path       = "out/items.ndjson"
  }
}
