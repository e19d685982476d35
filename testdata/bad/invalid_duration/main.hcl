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
    path       = "out/items.ndjson"
  }
  retry {
    initial = "1 second"
  }
}
