go test fuzz v1
[]byte("connection \"files\" {\n  type = \"file\"\n  path = \"data\"\n}\nintegration \"sync\" {\n  source {\n    connection = connection.files\n    path       = \"in/*.json\"\n  }\n  target {\n    connection = connection.files\n    path       = \"out/items.ndjson\"\n  }\n}\n\nschedule \"nightly\" {\n  integration = integration.sink\n  cron        = \"0 2 * * *\"\n}\n")
bool(false)
