test "contact_maps_to_customer" {
  mapping = mapping.contact_to_customer
  input   = jsondecode(file("testdata/contact.json"))
  expect = {
    number = "C000042"
    name   = "Brouwer Fietsen B.V."
    contact = {
      first_name = "Anna"
      last_name  = "De Vries"
      email      = "anna@brouwer-fietsen.nl"
      phone      = "+31201234567"
    }
    address           = { city = "Amsterdam", country = "NL", country_name = "Netherlands" }
    segment           = "key_account"
    newsletter        = true
    external_ref      = "crm:42"
    source_updated_at = "2025-03-18T09:30:00Z"
  }
}

test "person_without_company_is_named" {
  mapping = mapping.contact_to_customer
  input   = merge(jsondecode(file("testdata/contact.json")), { company = null, lifetime_value = 250, marketing_opt_in = null, country = "xx" })
  expect  = { name = "Anna De Vries", segment = "occasional", newsletter = false, address = { country_name = "Other" } }
}

test "deleted_contact_is_skipped" {
  mapping     = mapping.contact_to_customer
  input       = merge(jsondecode(file("testdata/contact.json")), { deleted = true })
  expect_skip = true
}

test "whole_integration" {
  integration = integration.contacts_to_customers
  records = [
    { id = "7", first_name = "jan", last_name = "jansen", email = " Jan@Example.COM ", country = "be", lifetime_value = 1200, updated_at = "2025-03-01T10:00:00+01:00" },
    { id = 8, first_name = "Piet", email = "", updated_at = "2025-03-01T11:00:00Z" },
    { id = 9, email = "no-date@example.com" },
  ]
  expect_writes = [
    {
      number            = "C000007", name = "Jan Jansen", contact = { first_name = "Jan", last_name = "Jansen", email = "jan@example.com", phone = null }
      address           = { country = "BE", country_name = "Belgium" }, segment = "regular", newsletter = false
      source_updated_at = "2025-03-01T09:00:00Z"
    },
  ]
  expect_counts = { total = 3, success = 1, skipped = 1, failed = 1 }
}
