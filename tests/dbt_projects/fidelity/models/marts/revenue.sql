select sum(amount) as revenue from {{ ref('orders') }} cross join {{ ref('calendar') }}
