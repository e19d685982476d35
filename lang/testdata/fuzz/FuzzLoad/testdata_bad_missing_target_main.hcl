go test fuzz v1
[]byte("connection \"files\" {\n  type = \"file\"\n  path = \"data\"\n}\nintegration \"sync\" {\n  source {\n    connection = connection.files\n    path       = \"in/*.json\"\n  }\n}\n")
bool(false)
