go test fuzz v1
[]byte("mapping \"items\" {\n  key = \"id\"\n  fields = {\n    name = \"${title}\"\n    sku  = \"sku-${id}\"\n  }\n}\n")
bool(false)
