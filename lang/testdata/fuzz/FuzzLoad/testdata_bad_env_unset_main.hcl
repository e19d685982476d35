go test fuzz v1
[]byte("connection \"files\" {\n  type = \"file\"\n  path = env(\"FERRY_TEST_SURELY_UNSET_DIR\")\n}\n")
bool(false)
