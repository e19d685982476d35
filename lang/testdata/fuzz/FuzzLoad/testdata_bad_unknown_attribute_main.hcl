go test fuzz v1
[]byte("mapping \"m\" {\n  key   = \"id\"\n  filtr = \"active\"\n}\n")
bool(false)
