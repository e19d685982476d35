go test fuzz v1
[]byte("mapping \"items\" {\n  filter = <<EXPR\nstatus != 'archived' &&\n  price >\nEXPR\n  fields = { sku = \"sku\" }\n}\n")
bool(false)
