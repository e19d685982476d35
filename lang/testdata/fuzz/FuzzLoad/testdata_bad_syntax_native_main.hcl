go test fuzz v1
[]byte("connection \"files\" {\n  type = \"file\"\n  path = \"data\"\n\nmapping \"m\" {\n  key = \"id\"\n}\n")
bool(false)
