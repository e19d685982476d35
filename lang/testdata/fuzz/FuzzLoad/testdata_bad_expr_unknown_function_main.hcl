go test fuzz v1
[]byte("mapping \"items\" {\n  fields = {\n    name = \"trimm(title)\"\n  }\n}\n")
bool(false)
