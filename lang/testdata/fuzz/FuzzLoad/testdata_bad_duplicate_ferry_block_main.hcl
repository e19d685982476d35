go test fuzz v1
[]byte("ferry {\n  tenant = \"acme\"\n}\n\nferry {\n  tenant = \"other\"\n}\n")
bool(false)
