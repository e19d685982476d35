go test fuzz v1
[]byte("table \"countries\" {\n  values = { NL = \"Netherlands\" }\n}\n\nmapping \"items\" {\n  fields = {\n    country = \"lookup('countrys', country_code)\"\n  }\n}\n")
bool(false)
