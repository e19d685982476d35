connection "files" {
  type = "file"
  path = "data"
}
mapping "items" {
  fields = { id = "id" }
}

integration "sync" {
  source {
    connection = mapping.items
    path       = "in/*.json"
  }
  target {
    connection = connection.files
    path       = "out/items.ndjson"
  }
}
