go test fuzz v1
[]byte("mapping \"items\" {\n  key    = id\n  filter = true\n}\n")
bool(false)
