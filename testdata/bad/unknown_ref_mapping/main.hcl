connection "files" {
  type = "file"
  path = "data"
}
mapping "items" {
  fields = { id = "id" }
}

integration "sync" {
  source {
    connection = connection.files
    path       = "in/*.json"
  }
  transform {
    mapping = mapping.item
  }
  target {
    connection = connection.files
    path       = "out/items.ndjson"
  }
}
