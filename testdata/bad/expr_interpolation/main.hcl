mapping "items" {
  key = "id"
  fields = {
    name = "${title}"
    sku  = "sku-${id}"
  }
}
