go test fuzz v1
[]byte("connection \"files\" {\n  type = \"file\"\n  path = [\"data\"]\n}\n")
bool(false)
