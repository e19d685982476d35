go test fuzz v1
[]byte("variable \"data_dir\" {\n  type = string\n}\n\nconnection \"files\" {\n  type = \"file\"\n  path = var.data_dir\n}\n")
bool(false)
