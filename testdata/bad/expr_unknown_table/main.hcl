table "countries" {
  values = { NL = "Netherlands" }
}

mapping "items" {
  fields = {
    country = "lookup('countrys', country_code)"
  }
}
