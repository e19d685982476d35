mapping "m" {
  key   = "id"
  filtr = "active"
}
