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
}

mapping "items" {
  fields = { id = "id" }
}

test "both" {
  mapping     = mapping.items
  integration = integration.sync
  input       = { id = 1 }
  expect      = { id = 1 }
}
