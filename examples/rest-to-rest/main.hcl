# CRM contacts → ERP customers, over two REST APIs: read the CRM's paginated
# /contacts incrementally (updated_since), map each contact to a customer, and
# PUT it to the ERP with an idempotency key, so a retried write is applied once.
#
# Run it:   export FERRY_SECRET_CRM_TOKEN=... FERRY_SECRET_ERP_API_KEY=...
#           ferry run examples/rest-to-rest
# Test it:  ferry test examples/rest-to-rest

ferry {
  tenant = "acme"
}

connection "crm" {
  type       = "http"
  base_url   = env("CRM_URL", "https://crm.example.com/api/v2")
  rate_limit = 10 # requests per second; the CRM allows 600 a minute
  test_path  = "/me"
  auth {
    type  = "bearer"
    token = secret("crm_token")
  }
}

connection "erp" {
  type      = "http"
  base_url  = env("ERP_URL", "https://erp.example.com/api")
  timeout   = "20s"
  test_path = "/health"
  auth {
    type   = "api_key"
    header = "X-API-Key"
    value  = secret("erp_api_key")
  }
}

table "countries" {
  values = {
    NL = "Netherlands"
    BE = "Belgium"
    DE = "Germany"
    FR = "France"
    GB = "United Kingdom"
    US = "United States"
  }
  default = "Other"
}

mapping "contact_to_customer" {
  key = "string(id)"
  # Contacts deleted in the CRM or without an email address are not customers.
  filter = "deleted != true && email != null && trim(email) != ''"

  fields = {
    number                 = "'C' + padLeft(string(id), 6, '0')"
    name                   = "coalesce(trim(company ?? ''), titleCase(trim(join([first_name, last_name], ' '))))"
    "contact.first_name"   = "titleCase(trim(first_name))"
    "contact.last_name"    = "titleCase(trim(last_name))"
    "contact.email"        = "lower(trim(email))"
    "contact.phone"        = "phone == null ? null : regexReplace(replace(phone, '(0)', ''), '[^0-9+]', '')" # +31 (0)20 … → +3120…
    "address.city"         = "city"
    "address.country"      = "upper(country)"
    "address.country_name" = "lookup('countries', upper(country))"
    segment                = "lifetime_value >= 10000 ? 'key_account' : (lifetime_value >= 1000 ? 'regular' : 'occasional')"
    newsletter             = "bool(marketing_opt_in)"
    external_ref           = "'crm:' + string(id)"
    source_updated_at      = "formatTime(updated_at, 'RFC3339', 'UTC')"
  }
  defaults = {
    newsletter = false
    segment    = "occasional"
  }
}

integration "contacts_to_customers" {
  source {
    connection   = connection.crm
    path         = "/contacts"
    records      = "data"
    cursor       = "updated_at"    # incremental
    cursor_param = "updated_since" # the stored cursor goes in this query parameter
    pagination {
      type         = "cursor"
      cursor_path  = "meta.next_cursor"
      cursor_param = "cursor"
      size_param   = "limit"
      page_size    = 100
    }
  }

  normalize {
    require = ["id", "updated_at"]
    types   = { id = "int" }
  }

  transform {
    mapping        = mapping.contact_to_customer
    skip_unchanged = true # the ERP is not bothered with contacts whose customer did not change
  }

  target {
    connection         = connection.erp
    operation          = "upsert"
    path               = "'/customers/' + number" # per record: PUT /customers/C000042
    idempotency_header = "Idempotency-Key"
  }

  retry {
    max_attempts = 4
    initial      = "1s"
    max          = "30s"
  }
}
