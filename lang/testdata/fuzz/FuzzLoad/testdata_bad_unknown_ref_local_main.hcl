go test fuzz v1
[]byte("locals {\n  data_dir = \"data\"\n}\n\nconnection \"files\" {\n  type = \"file\"\n  path = local.datadir\n}\n")
bool(false)
