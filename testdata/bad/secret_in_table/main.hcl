table "tokens" {
  values = { shop = secret("shop_token") }
}
