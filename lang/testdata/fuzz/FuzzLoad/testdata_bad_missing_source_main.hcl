go test fuzz v1
[]byte("connection \"files\" {\n  type = \"file\"\n  path = \"data\"\n}\nintegration \"sync\" {\n  target {\n    connection = connection.files\n    path       = \"out/items.ndjson\"\n  }\n}\n")
bool(false)
