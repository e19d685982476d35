go test fuzz v1
[]byte("connection \"files\" {\n  type = \"file\"\n  path = \"data\"\n}\nintegration \"sync\" {\n  source {\n    connection = connection.files\n    path       = \"in/*.json\"\n  }\n  target {\n    connection = connection.files\n    path       = \"out/items.ndjson\"\n  }\n}\n\nmapping \"items\" {\n  fields = { id = \"id\" }\n}\n\ntest \"both\" {\n  mapping     = mapping.items\n  integration = integration.sync\n  input       = { id = 1 }\n  expect      = { id = 1 }\n}\n")
bool(false)
