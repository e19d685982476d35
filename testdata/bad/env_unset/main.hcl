connection "files" {
  type = "file"
  path = env("FERRY_TEST_SURELY_UNSET_DIR")
}
