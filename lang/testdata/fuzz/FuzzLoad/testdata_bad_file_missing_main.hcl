go test fuzz v1
[]byte("mapping \"items\" {\n  fields = { id = \"id\" }\n}\n\ntest \"from_fixture\" {\n  mapping = mapping.items\n  input   = jsondecode(file(\"testdata/missing.json\"))\n  expect  = { id = 1 }\n}\n")
bool(false)
