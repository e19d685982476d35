connection "files" {
  type = "file"
  path = "data"
}
integration "sync" {
  source {
    connection = connection.files
    format     = "json"
  }
  target {
    connection = connection.files
    path       = "out/items.ndjson"
  }
}
