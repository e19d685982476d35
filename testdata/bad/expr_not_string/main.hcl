mapping "items" {
  key    = id
  filter = true
}
