mapping "items" {
  fields = { price = "price" }
  casts  = { price = "integer" }
}
