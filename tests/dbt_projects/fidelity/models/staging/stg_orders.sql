select id as order_id, id as customer_id from {{ source('shop', 'orders') }}
