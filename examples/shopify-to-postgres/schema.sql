-- The target table of products_to_postgres. Run once: psql "$DATABASE_URL" -f schema.sql
CREATE TABLE IF NOT EXISTS products (
    shopify_id      bigint PRIMARY KEY,
    gid             text NOT NULL,
    handle          text,
    title           text NOT NULL,
    vendor          text,
    product_type    text,
    status          text NOT NULL CHECK (status IN ('active', 'draft', 'archived')),
    tags            text[] NOT NULL DEFAULT '{}',
    skus            text[] NOT NULL DEFAULT '{}',
    variant_count   integer NOT NULL,
    price_min       numeric(12, 2),
    price_max       numeric(12, 2),
    on_sale         boolean NOT NULL DEFAULT false,
    inventory_total integer NOT NULL DEFAULT 0,
    published       boolean NOT NULL DEFAULT false,
    published_at    timestamptz,
    updated_at      timestamptz NOT NULL,
    synced_at       timestamptz NOT NULL DEFAULT now()
);
