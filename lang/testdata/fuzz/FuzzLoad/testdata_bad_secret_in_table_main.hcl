go test fuzz v1
[]byte("table \"tokens\" {\n  values = { shop = secret(\"shop_token\") }\n}\n")
bool(false)
