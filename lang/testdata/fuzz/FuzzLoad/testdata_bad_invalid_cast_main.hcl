go test fuzz v1
[]byte("mapping \"items\" {\n  fields = { price = \"price\" }\n  casts  = { price = \"integer\" }\n}\n")
bool(false)
