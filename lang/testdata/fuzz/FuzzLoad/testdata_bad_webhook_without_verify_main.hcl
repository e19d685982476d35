go test fuzz v1
[]byte("connection \"files\" {\n  type = \"file\"\n}\n\nintegration \"orders\" {\n  source {\n    connection = connection.files\n    path       = \"in.json\"\n  }\n  target {\n    connection = connection.files\n    path       = \"out.ndjson\"\n  }\n  webhook {\n    records = \"orders\"\n  }\n}\n")
bool(false)
