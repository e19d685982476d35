go test fuzz v1
[]byte("mapping \"items\" {\n  fields = {\n    sku  = \"variants[0].sku\"\n    name = \"trim(title\"\n  }\n}\n")
bool(false)
