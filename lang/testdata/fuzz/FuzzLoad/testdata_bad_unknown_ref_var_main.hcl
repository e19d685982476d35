go test fuzz v1
[]byte("variable \"data_dir\" {\n  type    = string\n  default = \"data\"\n}\n\nconnection \"files\" {\n  type = \"file\"\n  path = var.data_dri\n}\n")
bool(false)
