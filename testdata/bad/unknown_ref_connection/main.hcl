connection "files" {
  type = "file"
  path = "data"
}
integration "sync" {
  source {
    connection = connection.flies
    path       = "in/*.json"
  }
  target {
    connection = connection.files
    path       = "out/items.ndjson"
  }
}
