select * from {{ source('shop', 'raw_payments') }}
