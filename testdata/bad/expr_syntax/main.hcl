mapping "items" {
  fields = {
    sku  = "variants[0].sku"
    name = "trim(title"
  }
}
