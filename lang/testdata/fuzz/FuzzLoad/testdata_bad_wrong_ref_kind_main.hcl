go test fuzz v1
[]byte("connection \"files\" {\n  type = \"file\"\n  path = \"data\"\n}\nmapping \"items\" {\n  fields = { id = \"id\" }\n}\n\nintegration \"sync\" {\n  source {\n    connection = mapping.items\n    path       = \"in/*.json\"\n  }\n  target {\n    connection = connection.files\n    path       = \"out/items.ndjson\"\n  }\n}\n")
bool(false)
