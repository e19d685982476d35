go test fuzz v1
[]byte("connection \"files\" {\n  type = \"fiel\"\n  path = \"data\"\n}\n")
bool(false)
