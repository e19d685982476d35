mapping "items" {
  fields = { id = "id" }
}

test "from_fixture" {
  mapping = mapping.items
  input   = jsondecode(file("testdata/missing.json"))
  expect  = { id = 1 }
}
