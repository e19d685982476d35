go test fuzz v1
[]byte("ferry {\n  tenant           = \"acme\"\n  required_version = \">= 99.0\"\n}\n")
bool(false)
