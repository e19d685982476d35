mapping "items" {
  fields = {
    name = "trimm(title)"
  }
}
