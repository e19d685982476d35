go test fuzz v1
[]byte("locals {\n  a = \"${local.b}-x\"\n  b = upper(local.c)\n  c = local.a\n}\n")
bool(false)
