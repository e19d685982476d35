go test fuzz v1
[]byte("connection \"files\" {\n  type = \"file\"\n  path = \"data\"\n}\n\nconection \"other\" {\n  type = \"file\"\n}\n")
bool(false)
