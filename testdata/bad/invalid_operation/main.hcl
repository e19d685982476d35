connection "files" {
  type = "file"
  path = "data"
}
integration "sync" {
  source {
    connection = connection.files
    path       = "in/*.json"
  }
  target {
    connection = connection.files
    operation  = "upsret"
    path       = "out/items.ndjson"
  }
}
