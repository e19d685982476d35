connection "files" {
  type = "file"
}

integration "orders" {
  source {
    connection = connection.files
    path       = "in.json"
  }
  target {
    connection = connection.files
    path       = "out.ndjson"
  }
  webhook {
    records = "orders"
  }
}
